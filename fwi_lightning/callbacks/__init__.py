"""Lightning callbacks of fwi-lightning: figures, run guards, curricula and their schedules."""
