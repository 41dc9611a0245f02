"""The network family: its random draws (``streams``), its definition (``network``), a layer's
linear maps, dense or convolutional (``layers``), and the plain-XLA factorisations its
orthogonal draws need (``linalg``)."""
