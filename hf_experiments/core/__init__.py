"""The framework every experiment shares: config dataclasses and the strict parser, the experiment registry, the
runner, `ExperimentTrainer` and its callbacks, schedules, micro-batching and bucketing, the original projects'
names, the char tokenizer and dataset writing. It imports no experiment package."""
