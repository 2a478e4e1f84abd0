"""Where pixels come from: plain images, large images in regions, whole slides, z-stacks; what the user
points at, as sources of a kind, with stable ids."""
