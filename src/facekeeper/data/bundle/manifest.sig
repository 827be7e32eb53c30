{
  "algorithm": "ed25519",
  "key_id": "1f7300a34c24876b",
  "signature": "dfYBSDftkYf+JtVlG88RZVYx7A707df33hdXm5F5RqX0Oj8q0G0Kw2FunyxPhVti9kzdlipAcjdB6+VGxk2kCw=="
}
