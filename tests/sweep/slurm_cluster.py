"""A one-node Slurm cluster on this host for the real-Slurm tests: Debian's ``slurm-wlm`` and
``munge`` (installed if missing), a generated slurm.conf (the settings NOTES.md records as
working here), ``munged``, ``slurmctld`` and ``slurmd`` started as root and stopped at the end.

``python -m tests.sweep.slurm_cluster DIR`` starts one by hand (prints the SLURM_CONF to export)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
CONF = """\
ClusterName=cnnjax
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort={port}
SlurmdPort={port1}
AuthType=auth/munge
# A requeued job waits cred_expire seconds (default 120) before it may start again.
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=600
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


LOCK = "/tmp/cnnjax-test-slurm.lock"


@contextlib.contextmanager
def one_at_a_time(path: str = LOCK):
  """Holds an exclusive lock on ``path``: one test cluster per host at a time (they would share
  munged, which the first to stop kills, and the cores)."""
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


class Unavailable(Exception):
  """Why no cluster can be started here (one line: the tests skip with it)."""


def install() -> None:
  """apt-get installs the packages if a daemon is missing; raises Unavailable if it can't."""
  if all(os.path.exists(d) for d in DAEMONS):
    return
  if os.geteuid() != 0:
    raise Unavailable("not root: can't install slurm-wlm and munge")
  if shutil.which("apt-get") is None:
    raise Unavailable("no apt-get to install slurm-wlm and munge")
  env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
  for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
      why = (done.stderr.strip() or f"exit {done.returncode}").splitlines()[-1]
      raise Unavailable(f"{' '.join(cmd)} failed: {why}")
  if not all(os.path.exists(d) for d in DAEMONS):
    raise Unavailable("slurm-wlm/munge installed but a daemon is missing")


def _mem_mib() -> int:
  with open("/proc/meminfo") as f:
    total_kib = int(f.readline().split()[1])
  return max(total_kib // 1024 - 2048, 1024)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Cluster:
  """Started by ``start``; ``env`` holds SLURM_CONF for every Slurm command and job."""

  def __init__(self, directory: str):
    self.dir = os.path.abspath(directory)
    self.conf = os.path.join(self.dir, "slurm.conf")
    self.env = {**os.environ, "SLURM_CONF": self.conf}
    self.munged: subprocess.Popen | None = None
    self._started_munge = False

  def start(self, timeout: float = 60) -> Cluster:
    if os.geteuid() != 0:
      raise Unavailable("not root: slurmctld, slurmd and munged need root here")
    install()
    for sub in ("state", "spool"):
      os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
    host = socket.gethostname().split(".")[0]
    port = _free_port()
    with open(self.conf, "w") as f:
      f.write(CONF.format(host=host, dir=self.dir, cpus=os.cpu_count(), mem=_mem_mib(),
                          port=port, port1=_free_port()))
    self._munge()
    for daemon in ("slurmctld", "slurmd"):
      done = subprocess.run([f"/usr/sbin/{daemon}", "-f", self.conf], env=self.env,
                            capture_output=True, text=True, timeout=30)
      if done.returncode != 0:
        self.stop()
        raise Unavailable(f"{daemon} did not start: {done.stderr.strip()[-200:]}")
    deadline = time.time() + timeout
    while time.time() < deadline:
      out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True,
                           text=True).stdout.split()
      if out and out[0] == "idle":
        return self
      time.sleep(0.5)
    self.stop()
    raise Unavailable(f"the node never became idle (see {self.dir}/slurmd.log)")

  def _munge(self) -> None:
    """munged as the munge user (NOTES.md); one already running is reused."""
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
      return
    os.makedirs("/run/munge", exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    done = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
      raise Unavailable(f"munged did not start: {done.stderr.strip()[-200:]}")
    self._started_munge = True

  def _kill_pidfile(self, name: str) -> None:
    path = os.path.join(self.dir, name)
    try:
      pid = int(open(path).read().strip())
    except (OSError, ValueError):
      return
    try:
      os.kill(pid, 15)
    except ProcessLookupError:
      return
    for _ in range(100):
      try:
        os.kill(pid, 0)
      except ProcessLookupError:
        return
      time.sleep(0.1)

  def stop(self) -> None:
    """Stops the daemons this cluster started (by their pid files)."""
    subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True)
    deadline = time.time() + 20  # let slurmd end the job steps: no slurmstepd left behind
    while time.time() < deadline and subprocess.run(
        ["squeue", "-h", "-t", "running,completing"], env=self.env, capture_output=True,
        text=True).stdout.strip():
      time.sleep(0.5)
    self._kill_pidfile("slurmd.pid")
    self._kill_pidfile("slurmctld.pid")
    if self._started_munge:
      pid = open("/run/munge/munged.pid").read().strip() if os.path.exists(
          "/run/munge/munged.pid") else None
      if pid:
        subprocess.run(["kill", pid], capture_output=True)


if __name__ == "__main__":
  cluster = Cluster(sys.argv[1]).start()
  print(f"export SLURM_CONF={cluster.conf}")
