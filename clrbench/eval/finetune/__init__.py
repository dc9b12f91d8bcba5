"""Fine-tuning (SimCLR B.8.1): one trial's training loop, its images, and the (lr, wd) grid as jobs."""
