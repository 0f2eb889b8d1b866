"""Visual features: backbones (the 1512-way net, pretrained CNNs, BOVW), extraction under `predict`, per-word aggregates."""
