"""Where a process runs: its device, its loader workers, and its place among the processes that
`torchrun` or `accelerate launch` started. `launched()` is the one entry for train and predict."""
