{
  "algorithm": "ed25519",
  "key_id": "1f7300a34c24876b",
  "signature": "FRqtfWzN4YmITFUfCjxGobGK9ji2roEvhvFzpA0jW6aDyt2su5UicAPTtIK4cZmDOg1WTTpDAqLIYw9C3JK0AQ=="
}
