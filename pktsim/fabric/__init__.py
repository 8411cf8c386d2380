"""The fabric: topology graphs, the one service that owns path geometry, hashing, load-balancing selectors, and faults with the routing's reaction to them."""
