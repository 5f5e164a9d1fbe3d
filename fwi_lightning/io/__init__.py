"""Reading and writing the formats geophysicists exchange: SEG-Y shot gathers and velocity
sections (`segy`), npy/npz gathers (`gathers`), and writing files all or nothing (`atomic`)."""
