import { Suspense } from "react";
import { GalleryView } from "@/components/GalleryView";

export const metadata = { title: "Gallery · Creative Studio" };

export default function GalleryPage() {
  return (
    <Suspense>
      <GalleryView />
    </Suspense>
  );
}
