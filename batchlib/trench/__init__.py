"""The mother-machine domain: algorithms on arrays and the jobs that wrap them."""
