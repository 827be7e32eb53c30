{
  "algorithm": "ed25519",
  "key_id": "e799a1f89321d331",
  "signature": "j/UYVmOI2zyJLiUhr7QH3HsI6aCvkly8v2RXtgvRyftnn9ETu739qe5qzW5/9t6qBqZyDGMsYAAzfrRFVzIyAw=="
}
