"""Training: data, the resumable loop and export of a checkpoint to a shipped model. Imported only by
the train and export commands."""
