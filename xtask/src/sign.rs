//! The fixture distro's signing key, and its signatures over packages and repomd.xml, made
//! reproducibly: the Ed25519 key comes from a fixed seed, and every signature (the key's own
//! self-signature too) carries the distro's SOURCE_DATE_EPOCH as its creation time, so two
//! generations write the same bytes. The key is a test key: its secret is this file's seed.

use pgp::composed::{ArmorOptions, DetachedSignature, SecretKeyParamsBuilder, SignedKeyDetails};
use pgp::composed::{KeyType, SignedPublicKey, SubpacketConfig};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::KeyFlags;
use pgp::packet::{SecretKey, SignatureConfig, SignatureType, Subpacket, SubpacketData, UserId};
use pgp::types::{KeyDetails, Password, Tag, Timestamp};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::Result;

/// The user id of the fixture's key.
pub const USER_ID: &str = "NestOS fixture distro (nosa test key) <fixture@nosa.invalid>";

/// The file name of the public key in the repository's directory.
pub const KEY_FILE: &str = "RPM-GPG-KEY-nosa-fixture";

/// The fixture's signing key.
pub struct FixtureKey {
    secret: SecretKey,
    time: u32,
}

fn rng(purpose: &str) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(
        *blake3::hash(format!("nosa fixture signing key v1: {purpose}").as_bytes()).as_bytes(),
    )
}

fn err(e: impl std::fmt::Display) -> Box<dyn std::error::Error + Send + Sync> {
    format!("signing: {e}").into()
}

impl FixtureKey {
    /// The key, created at `time` (SOURCE_DATE_EPOCH).
    pub fn new(time: u32) -> Result<FixtureKey> {
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_sign(true)
            .can_certify(true)
            .created_at(Timestamp::from_secs(time))
            .primary_user_id(USER_ID.into())
            .build()
            .map_err(err)?;
        // The generated self-signature carries the time of day; only the key is kept.
        let generated = params.generate(rng("key")).map_err(err)?;
        Ok(FixtureKey {
            secret: generated.primary_key,
            time,
        })
    }

    fn subpackets(&self) -> Result<Vec<Subpacket>> {
        Ok(vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
                self.time,
            )))
            .map_err(err)?,
            Subpacket::regular(SubpacketData::IssuerFingerprint(self.secret.fingerprint()))
                .map_err(err)?,
        ])
    }

    fn unhashed(&self) -> Result<Vec<Subpacket>> {
        Ok(vec![
            Subpacket::regular(SubpacketData::IssuerKeyId(self.secret.legacy_key_id()))
                .map_err(err)?,
        ])
    }

    /// The armored public key (`RPM-GPG-KEY-nosa-fixture`).
    pub fn public_armored(&self) -> Result<Vec<u8>> {
        let public = self.secret.public_key().clone();
        let uid = UserId::from_str(Default::default(), USER_ID).map_err(err)?;
        let mut config = SignatureConfig::v4(
            SignatureType::CertPositive,
            self.secret.algorithm(),
            HashAlgorithm::Sha256,
        );
        let mut flags = KeyFlags::default();
        flags.set_sign(true);
        flags.set_certify(true);
        config.hashed_subpackets = self.subpackets()?;
        config.hashed_subpackets.extend([
            Subpacket::regular(SubpacketData::KeyFlags(flags)).map_err(err)?,
            Subpacket::regular(SubpacketData::IsPrimary(true)).map_err(err)?,
        ]);
        config.unhashed_subpackets = self.unhashed()?;
        let sig = config
            .sign_certification(&self.secret, &public, &Password::empty(), Tag::UserId, &uid)
            .map_err(err)?;
        let details = SignedKeyDetails::new(vec![], vec![], vec![uid.into_signed(sig)], vec![]);
        let key = SignedPublicKey::new(public, details, vec![]);
        key.to_armored_bytes(ArmorOptions::default()).map_err(err)
    }

    /// An armored detached signature over `data` (`repomd.xml.asc`).
    pub fn detached(&self, data: &[u8]) -> Result<Vec<u8>> {
        let sig = DetachedSignature::sign_binary_data_with_subpackets(
            rng("detached"),
            &self.secret,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
            SubpacketConfig::UserDefined {
                hashed: self.subpackets()?,
                unhashed: self.unhashed()?,
            },
        )
        .map_err(err)?;
        sig.to_armored_bytes(ArmorOptions::default()).map_err(err)
    }

    /// The signer rpm's package builder takes.
    pub fn rpm_signer(&self) -> Result<rpm::signature::pgp::Signer> {
        rpm::signature::pgp::Signer::new(self.secret.clone()).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_and_its_signatures_are_the_same_every_time() {
        let a = FixtureKey::new(1_700_000_000).unwrap();
        let b = FixtureKey::new(1_700_000_000).unwrap();
        assert_eq!(a.public_armored().unwrap(), b.public_armored().unwrap());
        assert_eq!(a.detached(b"x").unwrap(), b.detached(b"x").unwrap());
        assert_ne!(a.detached(b"x").unwrap(), a.detached(b"y").unwrap());
    }
}
