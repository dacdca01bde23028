//! ARNs split once, in one place: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.

/// The six parts of an ARN, borrowed from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub partition: &'a str,
    /// `iam`, `kms`, `sts`, `lambda`, …
    pub service: &'a str,
    /// Empty for global services (IAM).
    pub region: &'a str,
    /// Empty for some resources (S3 buckets).
    pub account: &'a str,
    /// Everything after the fifth colon (`role/path/name`, `key/mrk-…`, `function:name`).
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// The parts of `text`, or `None` when it is not an ARN (no `arn:` prefix, fewer than six
    /// parts, an empty partition or service).
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let arn = Arn {
            partition: parts.next()?,
            service: parts.next()?,
            region: parts.next()?,
            account: parts.next()?,
            resource: parts.next()?,
        };
        (!arn.partition.is_empty() && !arn.service.is_empty()).then_some(arn)
    }

    /// The account, when the ARN names one.
    pub fn account(&self) -> Option<&'a str> {
        Some(self.account).filter(|a| !a.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::Arn;

    #[test]
    fn the_six_parts_are_read_once() {
        let role = Arn::parse("arn:aws:iam::111122223333:role/path/App").unwrap();
        assert_eq!(
            (
                role.partition,
                role.service,
                role.region,
                role.account(),
                role.resource
            ),
            ("aws", "iam", "", Some("111122223333"), "role/path/App")
        );
        let f =
            Arn::parse("arn:aws-cn:lambda:cn-north-1:111122223333:function:guard:live").unwrap();
        assert_eq!(
            (f.region, f.resource),
            ("cn-north-1", "function:guard:live")
        );
        assert_eq!(Arn::parse("arn:aws:s3:::bucket").unwrap().account(), None);
        for not_arn in [
            "",
            "arn",
            "arn:aws:iam",
            "AROA6QJX2M4TBCKL7WZNE",
            "arn::iam::1:root",
            "urn:aws:iam::1:root:x",
        ] {
            assert_eq!(Arn::parse(not_arn), None, "{not_arn}");
        }
    }
}
