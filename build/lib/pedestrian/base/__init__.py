"""The ground floor: what every other part of the package shares. It imports nothing of the project."""
