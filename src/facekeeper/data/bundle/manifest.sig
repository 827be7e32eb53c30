{
  "algorithm": "ed25519",
  "key_id": "1f7300a34c24876b",
  "signature": "0Icgu4iAakhyz610s5NHWABX7XFK9SEg7WF2gltJxTC6kR66gvAvMmlDhl1LlGkIlhsJ3POKcip/vd/bPCe8Bw=="
}
