"""ResNet on ImageNet (He et al. 2016, §3.4): SGD, batch 256, momentum 0.9, weight decay 1e-4,
learning rate 0.1 divided by 10 at epochs 30, 60 and 80, 90 epochs. ``:resnet50`` (default),
``:resnet18`` ... ``:resnet152``; ``original`` puts the bottleneck's stride in the first 1×1 conv
(v1) instead of the 3×3 (v1.5, torchvision's).

``:mlperf`` (``:mlperf,smoke`` for the embedded-data check) is the MLPerf Training v4.0
ResNet-50 recipe of NVIDIA's single-node H200 submission (8 GPUs × 400 images), read from
mlcommons/training_results_v4.0, NVIDIA/benchmarks/resnet/implementations/h200_ngc24.04_mxnet:
``config_DGXH100.sh`` (OPTIMIZER=sgdwfastlars, BATCHSIZE=400 per GPU, LR=11.0, WARMUP_EPOCHS=2,
WD=5.0e-05, MOM=0.9, LARSETA=0.001, LABELSMOOTHING=0.1, LRSCHED=pow2, NUMEPOCHS=37, EVAL_PERIOD=4),
``common/fit.py`` (``PolySchedule``: linear warm-up, then end_lr 0.0001 + (lr − end_lr)·(1 −
t/T)², lars_eps 0) and ``common/optimizer.py`` (no LARS trust ratio for BatchNorm gamma/beta and
biases). Where cnnjax differs: weight decay skips the fc bias too (NVIDIA decays it); LARS' ε is
``optimizer.eps`` (1e-8, NVIDIA 0); the submission trains in fp16 with MXNet's fused kernels,
here bf16 compute with f32 parameters; its zero-initialised residual BatchNorms, data pipeline
(DALI) and evaluation offset are not checked here (the offset targets epoch 35; 37 is the cap).
"""

from experiments import zoo

MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]

MLPERF_BASE_LR = 11.0
MLPERF_END_LR = 1e-4


def get_config(arg=None):
  words = (arg or "").split(",")
  mlperf = "mlperf" in words
  model, flags = zoo.parse(",".join(w for w in words if w != "mlperf") or None, "resnet50",
                           MODELS)
  if mlperf:
    return zoo.finish(mlperf_config(), model, flags)
  c = zoo.imagenet(zoo.base_config(), batch_size=256, epochs=90)
  c.optimizer.update(name="momentum", learning_rate=0.1, momentum=0.9, weight_decay=1e-4)
  c.schedule.update(name="step", decay_epochs=(30, 60, 80), decay_factor=0.1)
  return zoo.finish(c, model, flags)


def mlperf_config():
  """The MLPerf v4.0 recipe above: LARS, batch 3,200, 2 warm-up epochs, polynomial decay."""
  c = zoo.imagenet(zoo.base_config(), batch_size=8 * 400, epochs=37)
  c.model_options.dtype = "bfloat16"
  c.optimizer.update(name="lars", learning_rate=MLPERF_BASE_LR, momentum=0.9, weight_decay=5e-5,
                     trust_coefficient=0.001)
  c.schedule.update(name="polynomial", warmup_epochs=2.0, power=2.0,
                    final_lr_fraction=MLPERF_END_LR / MLPERF_BASE_LR)
  c.label_smoothing = 0.1
  c.eval_every_epochs = 4.0
  return c
