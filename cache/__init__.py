"""The local content-addressed store: blobs, layers, images, tags and the build cache."""
