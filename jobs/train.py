"""Ray job entry point: train the swap model: `faceswap train` as a Ray job (add --gpu to run on the gpu_node workers).

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- python jobs/train.py --help
"""

import sys

from _common import run_command  # jobs/ is sys.path[0] when run as `python jobs/<name>.py`

if __name__ == "__main__":
    sys.exit(run_command("train"))
