"""Attribution: which training works moved one output, and by how much."""
