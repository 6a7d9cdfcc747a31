//! The operations the emulator serves, with the API each belongs to and its default quota.

use std::fmt;

/// The API family an operation belongs to; it decides how errors and authentication look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Amazon Connect Customer Profiles (rest-json, SigV4).
    CustomerProfiles,
    /// Amazon Connect user operations (rest-json, SigV4).
    Connect,
    /// Genesys Context Services / UCS profile resources (JSON, optional basic auth).
    Genesys,
    /// AWS Security Token Service (the query protocol: form-encoded requests, XML answers).
    Sts,
}

/// One operation, named as the API names it (Genesys ones carry a `Genesys` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    GetDomain,
    UpdateProfile,
    CreateProfile,
    SearchProfiles,
    BatchGetProfile,
    DescribeInstance,
    UpdateUserIdentityInfo,
    DescribeUser,
    ListUsers,
    SearchUsers,
    GenesysGetProfile,
    GenesysPutProfile,
    GenesysCreateProfile,
    GetCallerIdentity,
    DeleteProfile,
    GenesysDeleteProfile,
}

impl Operation {
    /// Every operation, in a fixed order.
    pub const ALL: [Operation; 16] = [
        Operation::GetDomain,
        Operation::UpdateProfile,
        Operation::CreateProfile,
        Operation::SearchProfiles,
        Operation::BatchGetProfile,
        Operation::DescribeInstance,
        Operation::UpdateUserIdentityInfo,
        Operation::DescribeUser,
        Operation::ListUsers,
        Operation::SearchUsers,
        Operation::GenesysGetProfile,
        Operation::GenesysPutProfile,
        Operation::GenesysCreateProfile,
        Operation::GetCallerIdentity,
        Operation::DeleteProfile,
        Operation::GenesysDeleteProfile,
    ];

    /// The operation's name, as used by `--quota` and in the statistics.
    pub fn name(self) -> &'static str {
        match self {
            Operation::GetDomain => "GetDomain",
            Operation::UpdateProfile => "UpdateProfile",
            Operation::CreateProfile => "CreateProfile",
            Operation::SearchProfiles => "SearchProfiles",
            Operation::BatchGetProfile => "BatchGetProfile",
            Operation::DescribeInstance => "DescribeInstance",
            Operation::UpdateUserIdentityInfo => "UpdateUserIdentityInfo",
            Operation::DescribeUser => "DescribeUser",
            Operation::ListUsers => "ListUsers",
            Operation::SearchUsers => "SearchUsers",
            Operation::GenesysGetProfile => "GenesysGetProfile",
            Operation::GenesysPutProfile => "GenesysPutProfile",
            Operation::GenesysCreateProfile => "GenesysCreateProfile",
            Operation::GetCallerIdentity => "GetCallerIdentity",
            Operation::DeleteProfile => "DeleteProfile",
            Operation::GenesysDeleteProfile => "GenesysDeleteProfile",
        }
    }

    /// Looks an operation up by its name (exact spelling).
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The API the operation belongs to.
    pub fn api(self) -> Api {
        match self {
            Operation::GetDomain
            | Operation::UpdateProfile
            | Operation::CreateProfile
            | Operation::SearchProfiles
            | Operation::BatchGetProfile
            | Operation::DeleteProfile => Api::CustomerProfiles,
            Operation::DescribeInstance
            | Operation::UpdateUserIdentityInfo
            | Operation::DescribeUser
            | Operation::ListUsers
            | Operation::SearchUsers => Api::Connect,
            Operation::GenesysGetProfile
            | Operation::GenesysPutProfile
            | Operation::GenesysCreateProfile
            | Operation::GenesysDeleteProfile => Api::Genesys,
            Operation::GetCallerIdentity => Api::Sts,
        }
    }

    /// The documented default quota as `(requests per second, burst)`, if the API has one.
    ///
    /// Customer Profiles: 100 TPS (GetDomain 5), no separate burst documented, so the burst
    /// equals the rate; BatchGetProfile is not in the quota table, so it gets the same 100.
    /// Connect user operations: `RateLimit` 2, `BurstLimit` 5. Genesys and STS: none (STS
    /// allows far more than a run's one call).
    pub fn default_quota(self) -> Option<(f64, u32)> {
        if self == Operation::GetDomain {
            return Some((5.0, 5));
        }
        match self.api() {
            Api::CustomerProfiles => Some((100.0, 100)),
            Api::Connect => Some((2.0, 5)),
            Api::Genesys | Api::Sts => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
