"""The run folder: its files, written atomically, and read back by resume, report and predict."""
