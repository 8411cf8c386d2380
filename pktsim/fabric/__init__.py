"""The fabric: topology graphs, the one service that owns path geometry, hashing and load-balancing selectors."""
