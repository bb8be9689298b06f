"""S3's two-level attention framework over lesions (or tumour markers) and time points:
``model`` (the TH-former / OH-former network), ``data`` (sequences of patches and markers),
``train`` (fitting, scoring, the checkpoint), ``explain`` (attention read-outs)."""
