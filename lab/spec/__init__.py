"""The file formats: YAML with errors that name the file and the field, parameters and `{name}`
placeholders, topologies, timeline step kinds, exercises (with `extends:`), the functions an
exercise names (checks, plots, measures), SSH inventories, and sweep plans."""
