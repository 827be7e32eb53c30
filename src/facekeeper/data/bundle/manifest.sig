{
  "algorithm": "ed25519",
  "key_id": "1f7300a34c24876b",
  "signature": "/bsmhOt08xLNx7EtKX5Szj2peP7mJDgOUc9sR4B7qVhs5iOcvXvMQbnRRv3bTFOsRDqZb/eA+WC/Fe05AnK6AQ=="
}
