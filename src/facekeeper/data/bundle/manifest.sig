{
  "algorithm": "ed25519",
  "key_id": "1f7300a34c24876b",
  "signature": "Es2geCf9KCZ4r4LT7hpnrcKCiF3wOddb+gUqDHDrhMPD7YJBzdvzH93NGJ9TGWRafP+AyqHkjGmKJTvxICEMAg=="
}
