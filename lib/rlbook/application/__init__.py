"""What a user runs: the command line, exports to other trainers, pages and the scoreboard."""
