"""Ray job entry point: the whole pipeline (`faceswap run --config FILE.yaml`) as one Ray job.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml \
        -- python jobs/run.py --config examples/pipeline.yaml

Extract (both sides), train, convert, assemble and evaluate run in this one driver;
the stages spread over the cluster's cpu_node and gpu_node workers.
"""

import sys

from _common import run_command  # jobs/ is sys.path[0] when run as `python jobs/<name>.py`

if __name__ == "__main__":
    sys.exit(run_command("run"))
