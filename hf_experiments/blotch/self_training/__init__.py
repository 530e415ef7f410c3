"""Training that rewrites its own data: the data cache, the Trainer that trains on it epoch by epoch, and the
manipulation rounds (STaR, augmentation, axing, stepwise internalization) as callbacks. `docs/data_cache.md`."""
