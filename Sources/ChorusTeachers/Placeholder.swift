// Placeholder: teacher pool and aggregators land with issue D.
