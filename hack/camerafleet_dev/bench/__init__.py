"""`make bench`: how close the pipeline comes to the models' own limit, where the time goes, and how it
behaves at 50%/80%/100%/200% load, with 150 cameras and under a load step. See `__main__` for the
phases and `report` for what is written."""
