{
  "algorithm": "ed25519",
  "key_id": "1f7300a34c24876b",
  "signature": "OPbml52vgGGn+ce0gPL3Ut8FxzojQX4TiYOs604+tf2rGdICQgahHWXG6sNV1AK6WHBwVn6sowYQgZC82TGmCQ=="
}
