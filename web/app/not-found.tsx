import Link from "next/link";

export default function NotFound() {
  return (
    <div className="page">
      <div className="notice notice-warn" role="alert">
        <div className="notice-body">
          <strong>This page does not exist</strong>
          <p style={{ margin: "4px 0 0" }}>Check the address, or go back to the studio.</p>
        </div>
        <Link className="btn btn-small" href="/">
          Home
        </Link>
      </div>
    </div>
  );
}
