"""The PyTorch side: the same architecture, batch, input and optimizer as ``jax_bench``.

ResNet-18/50 are torchvision's. LeNet-5 and the CIFAR ResNets have no torchvision model, so they
are defined here layer for layer as cnnjax defines them, with module names that map onto cnnjax's
parameter tree (tests/benchmarks check that converted weights give the same logits). Each case is
measured in PyTorch's default NCHW layout and in ``channels_last``; the comparison uses the faster.
"""

from __future__ import annotations

import resource

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import timing
from benchmarks.cases import Case, CaseError

MEMORY_FORMATS = ("contiguous", "channels_last")


class LeNet5(nn.Module):
  """cnnjax ``lenet5``: conv 6@5×5 pad 2, max pool, conv 16@5×5, max pool, dense 120-84-10."""

  def __init__(self, num_classes: int = 10, channels: int = 1):
    super().__init__()
    self.conv1 = nn.Conv2d(channels, 6, 5, padding=2)
    self.conv2 = nn.Conv2d(6, 16, 5)
    self.fc1 = nn.Linear(16 * 5 * 5, 120)
    self.fc2 = nn.Linear(120, 84)
    self.fc3 = nn.Linear(84, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.conv1(x)), 2)
    x = F.max_pool2d(F.relu(self.conv2(x)), 2)
    x = torch.flatten(x, 1)
    return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
  """cnnjax ``resnet.BasicBlock`` with the CIFAR option-A shortcut."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.stride, self.extra = stride, cout - cin

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
    if self.extra:
      shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
    return F.relu(y + shortcut)


class CifarResNet(nn.Module):
  """cnnjax ``resnet20 … resnet110`` (§4.2 of He et al. 2016; shortcut option A)."""

  def __init__(self, depth: int, num_classes: int = 10, widths=(16, 32, 64)):
    super().__init__()
    n = (depth - 2) // 6
    self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(widths[0])
    cin = widths[0]
    for i, width in enumerate(widths, start=1):
      blocks = []
      for j in range(n):
        blocks.append(BasicBlock(cin, width, 2 if i > 1 and j == 0 else 1))
        cin = width
      setattr(self, f"layer{i}", nn.Sequential(*blocks))
    self.fc = nn.Linear(widths[-1], num_classes)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    x = self.layer3(self.layer2(self.layer1(x)))
    return self.fc(x.mean((2, 3)))


def build(name: str, num_classes: int, channels: int = 3) -> nn.Module:
  if name == "lenet5":
    return LeNet5(num_classes, channels)
  if name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
    return CifarResNet(int(name[6:]), num_classes)
  import torchvision  # pylint: disable=import-outside-toplevel
  if not hasattr(torchvision.models, name):
    raise CaseError(f"no PyTorch model for {name!r}: neither torchvision nor benchmarks/.")
  return getattr(torchvision.models, name)(num_classes=num_classes)


def measure(case: Case, *, memory_format: str = "contiguous", min_time: float = 10.0,
            min_steps: int = 5, max_steps: int = 500, warmup: int = 3,
            inference: bool = True) -> dict:
  """Train-step (SGD with momentum, cross-entropy) and inference throughput of the case."""
  if memory_format not in MEMORY_FORMATS:
    raise CaseError(f"unknown memory format {memory_format!r}; choose one of "
                    f"{', '.join(MEMORY_FORMATS)}.")
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
  model = build(case.model, case.num_classes, case.channels).to(device, memory_format=fmt)
  gen = torch.Generator().manual_seed(0)
  x = torch.randn(case.batch, case.channels, case.size, case.size, generator=gen)
  x = x.to(device).contiguous(memory_format=fmt)
  y = torch.randint(0, case.num_classes, (case.batch,), generator=gen).to(device)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=case.dtype == "bfloat16")
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

  def train_step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    sync()

  model.train()
  for _ in range(warmup):
    train_step()
  result = {"framework": "torch", "version": f"torch {torch.__version__}", "case": case.label,
            "model": case.model, "batch": case.batch, "size": case.size, "dtype": case.dtype,
            "memory_format": memory_format, "threads": torch.get_num_threads(),
            "train": timing.summarize(
                timing.timed_steps(train_step, min_time, min_steps, max_steps), case.batch)}
  if inference:
    model.eval()

    def infer():
      with torch.no_grad(), autocast:
        model(x)
      sync()

    for _ in range(warmup):
      infer()
    result["inference"] = timing.summarize(
        timing.timed_steps(infer, min_time / 2, min_steps, max_steps), case.batch)
  result["memory"] = {"peak_host_rss_bytes":
                      float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}
  if device.type == "cuda":
    result["memory"]["peak_device_bytes"] = float(torch.cuda.max_memory_allocated())
  return result
