{
  "algorithm": "ed25519",
  "key_id": "97155809799ce42d",
  "signature": "pd6/Q9xWf4DKze6YmTByOVjqxUje+QaVmPd0sNFdzQQchuqJxyp4QiBiwg2DH0uK+GcEmo6VAl39agwJW0qyCw=="
}
