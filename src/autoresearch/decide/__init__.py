"""What the loop decides, as pure logic: the keep rule (`rule`), on synthetic streams (`simulate`)."""
