"""The run core (floor 2): one training run, from config checks to the written results. Imports the floors
below it (base, data, models, evaluate), never a tool above it."""
