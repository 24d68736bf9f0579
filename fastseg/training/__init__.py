"""Training on fastai: the config and recipes, the DataBlock and augmentation, the Learner, its
callbacks and schedule, and `trainer.train`, which runs them. The only package that imports fastai
(`config` and `recipes` do not, so the CLI's `--help` reads them for free)."""
