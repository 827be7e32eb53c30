{
  "algorithm": "ed25519",
  "key_id": "1f7300a34c24876b",
  "signature": "7IzF6thhi2Baqlou04oGbTI5gr1gKZHWItoBAQ6MpHX7nHQkLw9OwdUIOBR7V3q/Ykaads7dL3wg8mhjvfFpAg=="
}
