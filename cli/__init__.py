"""The kit's invoke tasks, one module per namespace; tasks.py composes them."""
