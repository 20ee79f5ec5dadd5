"""Images say whether their installer kernel is signed for Secure Boot.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing images keep what Octoprov assumed of them: a distribution's signed installer kernel
    op.add_column("provisioning_images",
                  sa.Column("signed_kernel", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("provisioning_images", "signed_kernel")
