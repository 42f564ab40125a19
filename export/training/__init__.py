"""Training: slice banks, batches and augmentation, losses, hard negatives, the loop,
validation while it runs, and the calibration of threshold and scores at its end."""
