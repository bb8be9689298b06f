"""The deep-learning engine: backbones, losses, datasets, training (Lightning), scoring,
deep features, Grad-CAM and Progressive Distill."""
