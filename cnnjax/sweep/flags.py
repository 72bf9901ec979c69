"""The sweep's flags of launch.py, defined once here (launch.py imports this module)."""

from __future__ import annotations

from absl import flags

EXECUTORS = ("local", "slurm", "submitit_local")

flags.DEFINE_bool("sweep", False, "Run every point × seed of the experiment file's get_sweep(arg) "
                  "under --workdir (DIR/<variant>/seed=<s>/).")
flags.DEFINE_integer("sweep_workers", None, "Runs at once (default: one per local accelerator; "
                     "1 on CPU, where the cores are split between the workers).")
flags.DEFINE_integer("sweep_runs_per_device", 1, "Runs sharing one GPU (memory preallocation "
                     "off).")
flags.DEFINE_bool("sweep_dry_run", False, "Print the table of runs and exit.")
flags.DEFINE_integer("sweep_retries", 1, "Retries of a failed run (per sweep command).")
flags.DEFINE_enum("sweep_executor", "local", EXECUTORS, "local: child processes here; slurm: one "
                  "Slurm job array (submitit); submitit_local: submitit's local executor (tests).")
flags.DEFINE_string("slurm_partition", None, "With --sweep_executor=slurm: the partition.")
flags.DEFINE_integer("slurm_time_min", 60, "Slurm time limit of each task, in minutes.")
flags.DEFINE_integer("slurm_gpus_per_task", 0, "GPUs per task.")
flags.DEFINE_integer("slurm_cpus_per_task", None, "CPUs per task.")
flags.DEFINE_integer("slurm_array_parallelism", 256, "Tasks of the array running at once.")
flags.DEFINE_string("slurm_account", None, "Slurm account.")
flags.DEFINE_integer("slurm_max_timeouts", 3, "Times a task that reaches its time limit is "
                     "requeued (each time it saves and resumes) before submitit gives up.")

flags.DEFINE_bool("sweep_process_per_run", False, "Each run of a local sweep in its own process "
                  "(isolation), instead of one after another in a warm process per worker.")
flags.DEFINE_bool("sweep_worker", False, "Internal: run the runs a local sweep sends on stdin "
                  "(cnnjax/sweep/worker.py).")

SWEEP_ONLY = ("sweep_workers", "sweep_runs_per_device", "sweep_dry_run", "sweep_retries",
              "sweep_executor", "slurm_partition", "slurm_time_min", "slurm_gpus_per_task",
              "slurm_cpus_per_task", "slurm_array_parallelism", "slurm_account",
              "slurm_max_timeouts", "sweep_process_per_run")
FLAGS = flags.FLAGS


def given_without_sweep() -> list[str]:
  """The sweep-only flags given without --sweep."""
  if FLAGS.sweep:
    return []
  return [f"--{name}" for name in SWEEP_ONLY if FLAGS[name].present]
