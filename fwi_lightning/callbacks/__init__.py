"""Lightning callbacks of fwi-lightning: figures, run guards and (later) curricula."""
