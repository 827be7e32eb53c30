{
  "algorithm": "ed25519",
  "key_id": "1f7300a34c24876b",
  "signature": "RMd7KPVECktu7VRS+nUHAMis8a5w3XtAfZuDbERS8GTRSkU00A4sASLMMbvWCA2egO2/dOG9sk7c2KIzpwIlDQ=="
}
