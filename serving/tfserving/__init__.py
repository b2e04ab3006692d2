"""TF Serving: the SavedModel layout, configuration files, launcher and clients."""
