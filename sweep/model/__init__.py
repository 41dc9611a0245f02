"""The network family: its random draws (``streams``), its definition (``network``), and the
plain-XLA factorisations its orthogonal draws need (``linalg``)."""
