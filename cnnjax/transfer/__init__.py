"""Transfer learning: importing torchvision weights, strict merges, freezing."""
