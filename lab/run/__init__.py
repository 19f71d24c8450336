"""Running an exercise on a lab that is up: its timeline, the impairments in force, and the processes it started."""
