"""Ray job entry point: swap faces in a video and assemble it: `faceswap convert` as a Ray job.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- python jobs/convert.py --help
"""

import sys

from _common import run_command  # jobs/ is sys.path[0] when run as `python jobs/<name>.py`

if __name__ == "__main__":
    sys.exit(run_command("convert"))
